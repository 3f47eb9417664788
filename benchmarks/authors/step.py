# The authors' iGAN training step, extracted from trainer.py of https://github.com/liminghao0914/involution_GAN
# (commit f049f76a49fc99d56efac4519f0b87931c2dcdcd, MIT licence: LICENSE in this folder). The lines are theirs,
# copied unreformatted, except those marked "# CHANGED" (all changes are listed in README.md here). Left out:
# what a training step does not run: load_pretrained_model/save_sample, and in Trainer.train the set-up before
# the loop and, after each step, the logging (every log_step=10 steps), sampling (every 100) and checkpointing
# (every 1000). The build_model branches of other models are kept verbatim; only model='igan', case=1 runs.
import os
import time
import torch
import datetime
import json
import torch.nn as nn
from torch.autograd import Variable

# CHANGED: trainer.py imports `from igan_models_case1 import Generator_INV1, Discriminator_INV1` (and cases 2-4,
# the SAGAN, DCGAN and MLP models, torchvision's save_image, utils1, utils); igan_models_case*.py are not in the
# public repository: its igan_models.py (Generator_INV / Discriminator_INV) is the iGAN that is.
from igan_models import Generator_INV as Generator_INV1, Discriminator_INV as Discriminator_INV1

DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'  # CHANGED: added; the caller may set it (--device)


# utils1.py
def tensor2var(x, grad=False):
    if DEVICE == 'cuda':  # CHANGED: was `if torch.cuda.is_available():`
        x = x.cuda()
    return Variable(x, requires_grad=grad)


# parameter.py, get_parameters2() (version 5.1, case 1: the celeb_igan_5.1 run): its defaults.
# CHANGED: a dict instead of argparse (this is not parsed from a command line)
CONFIG = dict(model='igan', adv_loss='wgan-gp', imsize=64, g_num=5, z_dim=128, g_conv_dim=64, d_conv_dim=64,
              lambda_gp=10, version='5.1', case=1, total_step=50000, d_iters=5, batch_size=64, num_workers=2,
              g_lr=0.0001, d_lr=0.0004, lr_decay=0.95, beta1=0.0, beta2=0.9, pretrained_model=None, train=True,
              parallel=False, dataset='celeb', use_tensorboard=False, image_path='./data', log_path='./logs',
              model_save_path='./models', sample_path='./samples', attn_path='./attn', log_step=10,
              sample_step=100, model_save_step=1000)



class Trainer(object):
    def __init__(self, data_loader, config):
        # Data record
        self.record = {
            'lossd': [],
            'lossg': [],
            'gp': [],
        }

        # Data loader
        self.data_loader = data_loader

        # exact model and loss
        self.model = config.model
        self.adv_loss = config.adv_loss
        self.case = config.case
        # Model hyper-parameters
        self.imsize = config.imsize
        self.g_num = config.g_num
        self.z_dim = config.z_dim
        self.g_conv_dim = config.g_conv_dim
        self.d_conv_dim = config.d_conv_dim
        self.parallel = config.parallel

        self.lambda_gp = config.lambda_gp
        self.total_step = config.total_step
        self.d_iters = config.d_iters
        self.batch_size = config.batch_size
        self.num_workers = config.num_workers
        self.g_lr = config.g_lr
        self.d_lr = config.d_lr
        self.lr_decay = config.lr_decay
        self.beta1 = config.beta1
        self.beta2 = config.beta2
        self.pretrained_model = config.pretrained_model

        self.dataset = config.dataset
        self.image_path = config.image_path
        self.log_path = config.log_path
        self.model_save_path = config.model_save_path
        self.sample_path = config.sample_path
        self.log_step = config.log_step
        self.sample_step = config.sample_step
        self.model_save_step = config.model_save_step
        self.version = config.version
        # Path
        self.log_path = os.path.join(config.log_path, self.version)
        self.sample_path = os.path.join(config.sample_path, self.version)
        self.model_save_path = os.path.join(config.model_save_path, self.version)

        self.rgb_channel = 3
        if self.dataset == 'mnist':
            self.rgb_channel = 1

        self.build_model()

        train_hist = {}
        train_hist['D_losses'] = []
        train_hist['G_losses'] = []


        # Start with trained model
        if self.pretrained_model:
            self.load_pretrained_model()

    # CHANGED: one iteration of the `for step in range(start, self.total_step):` loop of train() (trainer.py
    # lines 109-195); data_iter is passed in and returned, with the losses the loop keeps
    def train_step(self, data_iter):
        lossd = []
        lossg = []
        gp = []
        # ================== Train D ================== #
        self.D.train()
        self.G.train()

        try:
            real_images, _ = next(data_iter)
        except:
            data_iter = iter(self.data_loader)
            real_images, _ = next(data_iter)

        # Compute loss with real images
        # dr1, dr2, df1, df2, gf1, gf2 are attention scores
        real_images = tensor2var(real_images)
        d_out_real,dr1,dr2 = self.D(real_images)


        if self.adv_loss == 'wgan-gp':
            d_loss_real = - torch.mean(d_out_real)
        elif self.adv_loss == 'hinge':
            d_loss_real = torch.nn.ReLU()(1.0 - d_out_real).mean()

        # apply Gumbel Softmax
        z = tensor2var(torch.randn(real_images.size(0), self.z_dim))

        fake_images,gf1,gf2 = self.G(z)
        d_out_fake,df1,df2 = self.D(fake_images)

        if self.adv_loss == 'wgan-gp':
            d_loss_fake = d_out_fake.mean()
        elif self.adv_loss == 'hinge':
            d_loss_fake = torch.nn.ReLU()(1.0 + d_out_fake).mean()


        # Backward + Optimize
        d_loss = d_loss_real + d_loss_fake
        lossd = d_loss.item()
        self.reset_grad()
        d_loss.backward()
        self.d_optimizer.step()


        if self.adv_loss == 'wgan-gp':
            # Compute gradient penalty
            alpha = torch.rand(real_images.size(0), 1, 1, 1).to(DEVICE).expand_as(real_images)  # CHANGED: .cuda()
            interpolated = Variable(alpha * real_images.data + (1 - alpha) * fake_images.data, requires_grad=True)
            out,_,_ = self.D(interpolated)

            grad = torch.autograd.grad(outputs=out,
                                       inputs=interpolated,
                                       grad_outputs=torch.ones(out.size()).to(DEVICE),  # CHANGED: .cuda()
                                       retain_graph=True,
                                       create_graph=True,
                                       only_inputs=True)[0]

            grad = grad.view(grad.size(0), -1)
            grad_l2norm = torch.sqrt(torch.sum(grad ** 2, dim=1))
            d_loss_gp = torch.mean((grad_l2norm - 1) ** 2)
            gp = d_loss_gp.item()
            # Backward + Optimize
            d_loss = self.lambda_gp * d_loss_gp

            self.reset_grad()
            d_loss.backward()
            self.d_optimizer.step()

        # ================== Train G and gumbel ================== #
        # Create random noise
        #if (step + 1) % 5 == start:

        z = tensor2var(torch.randn(real_images.size(0), self.z_dim))
        fake_images,_,_ = self.G(z)

        # Compute loss with fake images
        g_out_fake,_,_ = self.D(fake_images)  # batch x n
        if self.adv_loss == 'wgan-gp':
            g_loss_fake = - g_out_fake.mean()
        elif self.adv_loss == 'hinge':
            g_loss_fake = - g_out_fake.mean()
        lossg = g_loss_fake.item()
        self.reset_grad()
        g_loss_fake.backward()
        self.g_optimizer.step()
        return data_iter, lossd, lossg, gp  # CHANGED: added

    def build_model(self):
        print(self.case)

        if self.model == 'sagan':
            self.G = Generator_SA(self.batch_size,self.imsize, self.z_dim, self.g_conv_dim, self.rgb_channel).cuda()
            self.D = Discriminator_SA(self.batch_size,self.imsize, self.d_conv_dim, self.rgb_channel).cuda()
        elif self.model == 'dcgan':
            self.G = Generator_DC(self.batch_size,self.imsize, self.z_dim, self.g_conv_dim, self.rgb_channel).cuda()
            self.D = Discriminator_DC(self.batch_size,self.imsize, self.d_conv_dim, self.rgb_channel).cuda()
        elif self.model == 'gan':
            self.G = Generator_MLP(self.batch_size,self.imsize, self.z_dim, self.g_conv_dim, self.rgb_channel).cuda()
            self.D = Discriminator_MLP(self.batch_size,self.imsize, self.d_conv_dim, self.rgb_channel).cuda()
        elif self.model == 'igan':

            if self.case == 1:
                self.G = Generator_INV1(self.batch_size,self.imsize, self.z_dim, self.g_conv_dim, self.rgb_channel).to(DEVICE)  # CHANGED: .cuda()
                self.D = Discriminator_INV1(self.batch_size,self.imsize, self.d_conv_dim, self.rgb_channel).to(DEVICE)  # CHANGED: .cuda()
            elif self.case == 2:
                self.G = Generator_INV2(self.batch_size,self.imsize, self.z_dim, self.g_conv_dim, self.rgb_channel).cuda()
                self.D = Discriminator_INV2(self.batch_size,self.imsize, self.d_conv_dim, self.rgb_channel).cuda()
            elif self.case == 3:
                self.G = Generator_INV3(self.batch_size, self.imsize, self.z_dim, self.g_conv_dim, self.rgb_channel).cuda()
                self.D = Discriminator_INV3(self.batch_size, self.imsize, self.d_conv_dim, self.rgb_channel).cuda()
            elif self.case == 4:
                self.G = Generator_INV4(self.batch_size, self.imsize, self.z_dim, self.g_conv_dim,
                                        self.rgb_channel).cuda()
                self.D = Discriminator_INV4(self.batch_size, self.imsize, self.d_conv_dim, self.rgb_channel).cuda()

        if self.parallel:
            self.G = nn.DataParallel(self.G)
            self.D = nn.DataParallel(self.D)

        # Loss and optimizer
        # self.g_optimizer = torch.optim.Adam(self.G.parameters(), self.g_lr, [self.beta1, self.beta2])
        self.g_optimizer = torch.optim.Adam(filter(lambda p: p.requires_grad, self.G.parameters()), self.g_lr, [self.beta1, self.beta2])
        self.d_optimizer = torch.optim.Adam(filter(lambda p: p.requires_grad, self.D.parameters()), self.d_lr, [self.beta1, self.beta2])

        self.c_loss = torch.nn.CrossEntropyLoss()
        # print networks
        print(self.G)
        print(self.D)

    def reset_grad(self):
        self.d_optimizer.zero_grad()
        self.g_optimizer.zero_grad()
